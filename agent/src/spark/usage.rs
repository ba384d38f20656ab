//! Per-application usage accumulated from Spark listener events (one JSON object per event-log
//! line), and its samples.
//!
//! - executor core-seconds: `Total Cores` × lifetime of every executor, from
//!   `SparkListenerExecutorAdded` to `…ExecutorRemoved`, else to `…ApplicationEnd`, else to now
//!   (local mode has no `ExecutorRemoved`);
//! - task run / CPU time: the sum over `SparkListenerTaskEnd` of `Task Metrics` → `Executor Run
//!   Time` (ms) and `Executor CPU Time` (ns);
//! - failed tasks: task ends whose `Task Info` says `Failed` (killed tasks are not failures);
//!   failed stages: `SparkListenerStageCompleted` with a `Failure Reason`;
//! - peak memory: the largest of any task's `Peak Execution Memory` and any executor metrics
//!   snapshot's `JVMHeapMemory + JVMOffHeapMemory` (task end, stage executor metrics, executor
//!   metrics updates).

use std::collections::BTreeMap;

use pharos_model::{Labels, METRIC_NAME, Sample};
use serde_json::Value;

/// One executor's life.
#[derive(Clone, Debug, PartialEq)]
struct ExecutorSpan {
    cores: f64,
    added_ms: i64,
    removed_ms: Option<i64>,
}

/// Usage of one Spark application so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppUsage {
    /// `App ID`.
    pub app_id: String,
    /// `App Name`.
    pub app_name: String,
    /// `User`.
    pub user: String,
    /// Application start, ms since the epoch.
    pub start_ms: Option<i64>,
    /// Application end, ms since the epoch (None while running).
    pub end_ms: Option<i64>,
    /// `spark.kubernetes.namespace` from the environment update (Spark on Kubernetes).
    pub namespace: Option<String>,
    executors: BTreeMap<String, ExecutorSpan>,
    /// Summed `Executor Run Time`, milliseconds.
    pub task_run_time_ms: f64,
    /// Summed `Executor CPU Time`, nanoseconds.
    pub task_cpu_time_ns: f64,
    /// Tasks that failed.
    pub failed_tasks: u64,
    /// Stage attempts that failed.
    pub failed_stages: u64,
    /// Peak memory seen, bytes.
    pub peak_memory_bytes: f64,
}

fn num(v: &Value, keys: &[&str]) -> Option<f64> {
    keys.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_f64)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

impl AppUsage {
    /// Applies one event-log line; returns false when the line is not a JSON object (skipped).
    pub fn apply_line(&mut self, line: &str) -> bool {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => {
                self.apply(&v);
                true
            }
            _ => false,
        }
    }

    /// Applies one listener event.
    pub fn apply(&mut self, e: &Value) {
        let ts = num(e, &["Timestamp"]).map(|t| t as i64);
        match e.get("Event").and_then(Value::as_str).unwrap_or_default() {
            "SparkListenerApplicationStart" => {
                self.app_id = text(e, "App ID");
                self.app_name = text(e, "App Name");
                self.user = text(e, "User");
                self.start_ms = ts;
            }
            "SparkListenerApplicationEnd" => self.end_ms = ts,
            "SparkListenerEnvironmentUpdate" => {
                let ns = e.get("Spark Properties").and_then(|p| p.get("spark.kubernetes.namespace"));
                if let Some(ns) = ns.and_then(Value::as_str).filter(|n| !n.is_empty()) {
                    self.namespace = Some(ns.to_string());
                }
            }
            "SparkListenerExecutorAdded" => {
                let id = text(e, "Executor ID");
                let cores = num(e, &["Executor Info", "Total Cores"]).unwrap_or(0.0);
                self.executors.insert(id, ExecutorSpan { cores, added_ms: ts.unwrap_or(0), removed_ms: None });
            }
            "SparkListenerExecutorRemoved" => {
                if let Some(x) = self.executors.get_mut(&text(e, "Executor ID")) {
                    x.removed_ms = ts;
                }
            }
            "SparkListenerTaskEnd" => {
                self.task_run_time_ms += num(e, &["Task Metrics", "Executor Run Time"]).unwrap_or(0.0);
                self.task_cpu_time_ns += num(e, &["Task Metrics", "Executor CPU Time"]).unwrap_or(0.0);
                if e.get("Task Info").and_then(|i| i.get("Failed")).and_then(Value::as_bool) == Some(true) {
                    self.failed_tasks += 1;
                }
                if let Some(peak) = num(e, &["Task Metrics", "Peak Execution Memory"]) {
                    self.peak_memory_bytes = self.peak_memory_bytes.max(peak);
                }
                self.observe_executor_metrics(e.get("Task Executor Metrics"));
            }
            "SparkListenerStageCompleted"
                if e.get("Stage Info").and_then(|s| s.get("Failure Reason")).is_some_and(|r| !r.is_null()) => {
                    self.failed_stages += 1;
                }
            "SparkListenerStageExecutorMetrics" => self.observe_executor_metrics(e.get("Executor Metrics")),
            "SparkListenerExecutorMetricsUpdate" => {
                if let Some(updates) = e.get("Executor Metrics Updated").and_then(Value::as_array) {
                    for u in updates {
                        self.observe_executor_metrics(u.get("Executor Metrics"));
                    }
                }
            }
            _ => {}
        }
    }

    fn observe_executor_metrics(&mut self, metrics: Option<&Value>) {
        let Some(m) = metrics else { return };
        let jvm = num(m, &["JVMHeapMemory"]).unwrap_or(0.0) + num(m, &["JVMOffHeapMemory"]).unwrap_or(0.0);
        self.peak_memory_bytes = self.peak_memory_bytes.max(jvm);
    }

    /// Executors ever added.
    pub fn executors_total(&self) -> usize {
        self.executors.len()
    }

    /// Σ cores × lifetime (seconds); running executors count up to the app end, else `now_ms`.
    pub fn executor_core_seconds(&self, now_ms: i64) -> f64 {
        self.executors
            .values()
            .map(|x| {
                let end = x.removed_ms.or(self.end_ms).unwrap_or(now_ms);
                x.cores * ((end - x.added_ms).max(0) as f64 / 1000.0)
            })
            .sum()
    }

    /// The samples of this application: at its end time once ended, else at `now_ms`. `extra`
    /// (cluster, node, team, …) goes under the `spark_app_*` labels.
    pub fn to_samples(&self, extra: &Labels, now_ms: i64) -> Vec<Sample> {
        let ts = self.end_ms.unwrap_or(now_ms);
        let base = Labels::from_pairs([
            ("spark_app_id", self.app_id.as_str()),
            ("spark_app_name", self.app_name.as_str()),
            ("spark_user", self.user.as_str()),
        ])
        .merged_under(extra);
        let mut values = vec![
            ("spark_app_executor_core_seconds_total", self.executor_core_seconds(now_ms)),
            ("spark_app_executors_total", self.executors_total() as f64),
            ("spark_app_task_run_time_seconds_total", self.task_run_time_ms / 1e3),
            ("spark_app_task_cpu_time_seconds_total", self.task_cpu_time_ns / 1e9),
            ("spark_app_failed_tasks_total", self.failed_tasks as f64),
            ("spark_app_failed_stages_total", self.failed_stages as f64),
            ("spark_app_peak_memory_bytes", self.peak_memory_bytes),
        ];
        if let Some(start) = self.start_ms {
            values.push(("spark_app_start_timestamp_seconds", start as f64 / 1e3));
        }
        if let Some(end) = self.end_ms {
            values.push(("spark_app_end_timestamp_seconds", end as f64 / 1e3));
        }
        values.into_iter().map(|(name, v)| Sample::new(base.with(METRIC_NAME, name), ts, v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executors_removed_or_ended_or_running() {
        let mut u = AppUsage::default();
        for line in [
            r#"{"Event":"SparkListenerApplicationStart","App Name":"n","App ID":"a-1","Timestamp":1000,"User":"u"}"#,
            r#"{"Event":"SparkListenerExecutorAdded","Timestamp":2000,"Executor ID":"1","Executor Info":{"Total Cores":4}}"#,
            r#"{"Event":"SparkListenerExecutorAdded","Timestamp":3000,"Executor ID":"2","Executor Info":{"Total Cores":2}}"#,
            r#"{"Event":"SparkListenerExecutorRemoved","Timestamp":12000,"Executor ID":"1"}"#,
            r#"{"Event":"SparkListenerTaskEnd","Task Info":{"Failed":true},"Task Metrics":{"Executor Run Time":1500,"Executor CPU Time":250000000,"Peak Execution Memory":64}}"#,
            r#"{"Event":"SparkListenerTaskEnd","Task Info":{"Failed":false,"Killed":true},"Task Metrics":{"Executor Run Time":500}}"#,
            r#"{"Event":"SparkListenerStageCompleted","Stage Info":{"Stage ID":1,"Failure Reason":"boom"}}"#,
            r#"{"Event":"SparkListenerStageCompleted","Stage Info":{"Stage ID":2}}"#,
            "not json",
        ] {
            u.apply_line(line);
        }
        // Executor 1: 4 cores × 10 s; executor 2 still running at now = 8 s: 2 × 5 s.
        assert_eq!(u.executor_core_seconds(8_000), 50.0);
        assert_eq!((u.failed_tasks, u.failed_stages), (1, 1));
        assert_eq!(u.peak_memory_bytes, 64.0);
        let samples = u.to_samples(&Labels::from_pairs([("cluster", "c")]), 8_000);
        let get = |n: &str| samples.iter().find(|s| s.labels.metric_name() == Some(n)).map(|s| s.value);
        assert_eq!(get("spark_app_task_run_time_seconds_total"), Some(2.0));
        assert_eq!(get("spark_app_task_cpu_time_seconds_total"), Some(0.25));
        assert_eq!(get("spark_app_end_timestamp_seconds"), None, "still running");
        assert_eq!(get("spark_app_start_timestamp_seconds"), Some(1.0));
        assert!(samples.iter().all(|s| s.timestamp_ms == 8_000 && s.labels.get("spark_app_id") == Some("a-1")));
        // After the end, executor 2 stops counting at the end time (20 s): 40 + 2 × 17 = 74.
        u.apply_line(r#"{"Event":"SparkListenerApplicationEnd","Timestamp":20000}"#);
        assert_eq!(u.executor_core_seconds(99_000), 74.0);
        assert!(u.to_samples(&Labels::default(), 99_000).iter().all(|s| s.timestamp_ms == 20_000));
    }
}
