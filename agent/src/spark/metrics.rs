//! Spark's PrometheusServlet output made queryable.
//!
//! The driver endpoint (`/metrics/prometheus/`) bakes the application id into every metric name
//! (`metrics_local_1795353726210_driver_BlockManager_memory_memUsed_MB_Value`, the id with `-`
//! turned into `_`; with `spark.metrics.namespace` unset, some setups print `spark_<id>_…`). The
//! id moves into a `spark_app_id` label and the name becomes stable:
//! `spark_driver_BlockManager_memory_memUsed_MB_Value`. The executors endpoint already has stable
//! names; its `application_id`/`application_name` labels become `spark_app_id`/`spark_app_name`.
//! Both get `spark_role` (`driver`, or `executor` for executor rows).

use std::sync::Arc;

use pharos_model::{Labels, METRIC_NAME};

use crate::scrape::exposition::ScrapedSample;
use crate::scrape::target::SampleRewrite;

/// The form of an app id inside a metric name (`local-17` → `local_17`).
pub fn sanitize_app_id(app_id: &str) -> String {
    app_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// The stable name of a driver metric, and the app id (sanitized) found in the name when the
/// given `app_id` did not match. `None` when the name does not carry an app id.
pub fn stable_driver_name(name: &str, app_id: &str) -> Option<(String, Option<String>)> {
    let sanitized = sanitize_app_id(app_id);
    for prefix in ["metrics_", "spark_"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            if !sanitized.is_empty()
                && let Some(tail) = rest.strip_prefix(sanitized.as_str()).and_then(|r| r.strip_prefix('_')) {
                    return Some((format!("spark_{tail}"), None));
                }
            // Unknown id: everything up to the `_driver_` component.
            if let Some(at) = rest.find("_driver_") {
                return Some((format!("spark_{}", &rest[at + 1..]), Some(rest[..at].to_string())));
            }
        }
    }
    None
}

/// Rewrites driver samples of application `app_id` (may be empty when unknown).
pub fn rewrite_driver(samples: Vec<ScrapedSample>, app_id: &str) -> Vec<ScrapedSample> {
    samples
        .into_iter()
        .map(|mut s| {
            let name = s.labels.metric_name().unwrap_or_default().to_string();
            let mut labels = s.labels.clone();
            let mut id = app_id.to_string();
            if let Some((stable, found)) = stable_driver_name(&name, app_id) {
                labels = labels.with(METRIC_NAME, &stable);
                if let Some(found) = found.filter(|_| app_id.is_empty()) {
                    id = found;
                }
            }
            s.labels = labels.with("spark_app_id", &id).with("spark_role", "driver");
            s
        })
        .collect()
}

/// Rewrites executors-endpoint samples.
pub fn rewrite_executors(samples: Vec<ScrapedSample>) -> Vec<ScrapedSample> {
    samples
        .into_iter()
        .map(|mut s| {
            let mut pairs: Vec<(String, String)> = Vec::with_capacity(s.labels.len() + 1);
            for (k, v) in s.labels.iter() {
                let k = match k {
                    "application_id" => "spark_app_id",
                    "application_name" => "spark_app_name",
                    other => other,
                };
                pairs.push((k.to_string(), v.to_string()));
            }
            match s.labels.get("executor_id") {
                Some("driver") => pairs.push(("spark_role".into(), "driver".into())),
                Some(_) => pairs.push(("spark_role".into(), "executor".into())),
                None => {}
            }
            s.labels = Labels::from_pairs(pairs);
            s
        })
        .collect()
}

/// [`rewrite_driver`] as a scraper hook.
pub fn driver_rewrite(app_id: String) -> SampleRewrite {
    Arc::new(move |samples| rewrite_driver(samples, &app_id))
}

/// [`rewrite_executors`] as a scraper hook.
pub fn executors_rewrite() -> SampleRewrite {
    Arc::new(rewrite_executors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::exposition::{Format, parse};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spark/http");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
    }

    #[test]
    fn driver_capture_gets_stable_names_and_an_app_id_label() {
        let body = fixture("prometheus_t2.body");
        let raw = parse(&body, Format::PrometheusText).unwrap();
        let lines = body.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).count();
        assert_eq!(raw.len(), lines);
        let out = rewrite_driver(raw, "local-1795353726210");
        assert_eq!(out.len(), lines);
        for s in &out {
            let name = s.labels.metric_name().unwrap();
            assert!(name.starts_with("spark_driver_"), "{name}");
            assert!(!name.contains("1795353726210"), "{name}");
            assert_eq!(s.labels.get("spark_app_id"), Some("local-1795353726210"));
            assert_eq!(s.labels.get("spark_role"), Some("driver"));
        }
        // Line from the capture: metrics_local_1795353726210_driver_BlockManager_memory_maxMem_MB_Value{type="gauges"} 1048
        let max_mem = out
            .iter()
            .find(|s| s.labels.metric_name() == Some("spark_driver_BlockManager_memory_maxMem_MB_Value"))
            .unwrap();
        assert_eq!(max_mem.value, 1048.0);
        assert_eq!(max_mem.labels.get("type"), Some("gauges"));
    }

    #[test]
    fn unknown_app_id_is_taken_from_the_name() {
        let raw = parse("metrics_spark_4f1e_driver_JVMCPU_jvmCpuTime_Value{type=\"gauges\"} 7\n", Format::PrometheusText).unwrap();
        let out = rewrite_driver(raw, "");
        assert_eq!(out[0].labels.metric_name(), Some("spark_driver_JVMCPU_jvmCpuTime_Value"));
        assert_eq!(out[0].labels.get("spark_app_id"), Some("spark_4f1e"));
        assert_eq!(stable_driver_name("spark_app_1_driver_x", "app-1"), Some(("spark_driver_x".into(), None)));
        assert_eq!(stable_driver_name("jvm_memory_bytes", "app-1"), None);
    }

    #[test]
    fn executors_capture_renames_application_labels() {
        let raw = parse(&fixture("executors_prometheus_t2.body"), Format::PrometheusText).unwrap();
        let out = rewrite_executors(raw);
        let cores = out.iter().find(|s| s.labels.metric_name() == Some("metrics_executor_totalCores")).unwrap();
        // metrics_executor_totalCores{application_id="local-1795353726210", application_name="spark-telemetry-probe", executor_id="driver"} 2
        assert_eq!(cores.value, 2.0);
        assert_eq!(cores.labels.get("spark_app_id"), Some("local-1795353726210"));
        assert_eq!(cores.labels.get("spark_app_name"), Some("spark-telemetry-probe"));
        assert_eq!(cores.labels.get("spark_role"), Some("driver"));
        assert_eq!(cores.labels.get("application_id"), None);
        let info = out.iter().find(|s| s.labels.metric_name() == Some("spark_info")).unwrap();
        assert_eq!(info.labels.get("version"), Some("4.3.0"));
    }
}
