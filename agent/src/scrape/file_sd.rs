//! File-based target lists in Prometheus' `file_sd` format: a JSON or YAML list of groups
//! `[{targets: ["host:port", …], labels: {…}}]`. Files are re-read when their modification time
//! or size changes; a file that fails to parse keeps its previous targets (and is reported).
//!
//! Special labels, as in Prometheus: `__scheme__` (default `http`), `__metrics_path__` (default
//! `/metrics`); `job` names the job (default `file_sd`). Other `__`-prefixed labels are dropped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use reqwest::Url;
use serde::Deserialize;

use super::pool::{ClientSet, DiscoveredTarget, ScrapeContext, ScrapePool, TargetKind};

/// Job of file targets without a `job` label.
pub const DEFAULT_FILE_SD_JOB: &str = "file_sd";

/// One group of a file_sd file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetGroup {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Parses one file_sd document (JSON is valid YAML, so one parser reads both).
pub fn parse_file_sd(text: &str) -> Result<Vec<DiscoveredTarget>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<TargetGroup> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let scheme = group.labels.get("__scheme__").map_or("http", String::as_str);
        let path = group.labels.get("__metrics_path__").map_or("/metrics", String::as_str);
        let job = group.labels.get("job").map_or(DEFAULT_FILE_SD_JOB, String::as_str);
        // `__spark_endpoint__: driver|executors` marks Spark servlet endpoints, which get the same
        // treatment as discovered drivers (app id out of metric names, `spark_role`).
        let kind = match group.labels.get("__spark_endpoint__").map(String::as_str) {
            None => TargetKind::Plain,
            Some("driver") => TargetKind::SparkDriver { app_id: group.labels.get("spark_app_id").cloned().unwrap_or_default() },
            Some("executors") => TargetKind::SparkExecutors,
            Some(other) => return Err(format!("group {g}: __spark_endpoint__ must be driver or executors, not {other:?}")),
        };
        let labels: Vec<(String, String)> = group
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("__") && *k != "job" && *k != "instance")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for address in &group.targets {
            let url = Url::parse(&format!("{scheme}://{address}{path}"))
                .map_err(|e| format!("group {g}: target {address:?}: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("group {g}: unsupported scheme {scheme:?}"));
            }
            out.push(DiscoveredTarget {
                url,
                job: job.to_string(),
                labels: labels.clone(),
                kind: kind.clone(),
                kubelet_auth: false,
            });
        }
    }
    Ok(out)
}

/// The current targets of a set of files, re-read when they change.
pub struct FileTargets {
    paths: Vec<PathBuf>,
    /// Per file: the (mtime, size) last read and the targets it gave.
    seen: HashMap<PathBuf, ((Option<SystemTime>, u64), Vec<DiscoveredTarget>)>,
}

impl FileTargets {
    /// Watches `paths`.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        FileTargets { paths, seen: HashMap::new() }
    }

    /// Re-reads changed files; returns all targets and whether anything changed.
    pub fn refresh(&mut self) -> (Vec<DiscoveredTarget>, bool) {
        let mut changed = false;
        for path in &self.paths {
            match std::fs::metadata(path) {
                Err(_) => {
                    // A deleted file takes its targets with it.
                    changed |= self.seen.remove(path).is_some();
                }
                Ok(meta) => {
                    let stamp = (meta.modified().ok(), meta.len());
                    if self.seen.get(path).is_some_and(|(s, _)| *s == stamp) {
                        continue;
                    }
                    match read(path) {
                        Ok(targets) => {
                            self.seen.insert(path.clone(), (stamp, targets));
                            changed = true;
                        }
                        Err(error) => {
                            tracing::warn!(file = %path.display(), %error, "cannot read file_sd targets; keeping the previous ones");
                            // Remember the stamp so the error is reported once per change.
                            let previous = self.seen.remove(path).map(|(_, t)| t).unwrap_or_default();
                            self.seen.insert(path.clone(), (stamp, previous));
                        }
                    }
                }
            }
        }
        let mut all: Vec<DiscoveredTarget> = self.seen.values().flat_map(|(_, t)| t.iter().cloned()).collect();
        all.sort_by(|a, b| (a.url.as_str(), &a.job).cmp(&(b.url.as_str(), &b.job)));
        all.dedup();
        (all, changed)
    }
}

fn read(path: &Path) -> Result<Vec<DiscoveredTarget>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse_file_sd(&text)
}

/// Keeps a scrape pool in line with the files, checking them every `refresh`. Runs forever.
pub async fn run_file_targets(paths: Vec<PathBuf>, refresh: Duration, context: ScrapeContext) -> anyhow::Result<()> {
    let clients = ClientSet { plain: reqwest::Client::builder().build()?, kubelet: None };
    let mut pool = ScrapePool::new("file_sd", context, clients);
    let mut files = FileTargets::new(paths);
    let mut ticker = tokio::time::interval(refresh);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let (files_back, (targets, changed)) = tokio::task::spawn_blocking(move || {
            let r = files.refresh();
            (files, r)
        })
        .await?;
        files = files_back;
        if changed {
            pool.sync(targets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_groups_with_special_labels() {
        let json = r#"[{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"job": "node", "env": "prod"}},
                       {"targets": ["trino:8080"], "labels": {"__metrics_path__": "/metrics", "__scheme__": "https", "__meta_x": "y"}}]"#;
        let t = parse_file_sd(json).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].url.as_str(), "http://10.0.0.1:9100/metrics");
        assert_eq!(t[0].job, "node");
        assert_eq!(t[0].labels, vec![("env".to_string(), "prod".to_string())]);
        assert_eq!(t[2].url.as_str(), "https://trino:8080/metrics");
        assert_eq!(t[2].job, DEFAULT_FILE_SD_JOB);
        assert!(t[2].labels.is_empty(), "{:?}", t[2].labels);
        let yaml = "- targets: ['a:1']\n  labels:\n    __metrics_path__: /m\n";
        assert_eq!(parse_file_sd(yaml).unwrap()[0].url.as_str(), "http://a:1/m");
        assert!(parse_file_sd("[{\"target\": []}]").unwrap_err().contains("unknown field"));
    }

    #[test]
    fn spark_endpoint_label_selects_the_spark_rewrites() {
        let yaml = r#"
- targets: ["sim:9700"]
  labels: {job: spark-driver, spark_app_id: spark-1, __spark_endpoint__: driver, __metrics_path__: /c/x/spark/spark-1/metrics/prometheus/}
- targets: ["sim:9700"]
  labels: {job: spark-executors, __spark_endpoint__: executors}
"#;
        let t = parse_file_sd(yaml).unwrap();
        assert!(matches!(&t[0].kind, TargetKind::SparkDriver { app_id } if app_id == "spark-1"));
        assert_eq!(t[0].url.path(), "/c/x/spark/spark-1/metrics/prometheus/");
        assert!(matches!(t[1].kind, TargetKind::SparkExecutors));
        assert!(t.iter().all(|t| t.labels.iter().all(|(k, _)| !k.starts_with("__"))));
        let e = parse_file_sd("[{targets: [a:1], labels: {__spark_endpoint__: history}}]").unwrap_err();
        assert!(e.contains("__spark_endpoint__"), "{e}");
    }

    #[test]
    fn refresh_rereads_on_change_and_keeps_targets_of_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("targets.json");
        std::fs::write(&path, r#"[{"targets": ["a:1"]}]"#).unwrap();
        let mut files = FileTargets::new(vec![path.clone()]);
        let (t, changed) = files.refresh();
        assert!(changed);
        assert_eq!(t.len(), 1);
        let (_, changed) = files.refresh();
        assert!(!changed, "unchanged file is not re-read");
        // A different size counts as a change even within the mtime granularity.
        std::fs::write(&path, r#"[{"targets": ["a:1", "b:2"]}]"#).unwrap();
        let (t, changed) = files.refresh();
        assert!(changed);
        assert_eq!(t.iter().map(|t| t.url.as_str()).collect::<Vec<_>>(), ["http://a:1/metrics", "http://b:2/metrics"]);
        std::fs::write(&path, "[{not valid").unwrap();
        let (t, _) = files.refresh();
        assert_eq!(t.len(), 2, "a broken file keeps its previous targets");
        std::fs::remove_file(&path).unwrap();
        let (t, changed) = files.refresh();
        assert!(changed);
        assert!(t.is_empty());
    }
}
