//! The `kubernetes:` config section.

use std::path::PathBuf;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Discovery from the node's kubelet: pods to scrape, Spark drivers, and the kubelet's own
/// cAdvisor and resource metrics.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Base URL of the kubelet; `${VAR}` is replaced from the environment (the DaemonSet sets
    /// `NODE_IP` from `status.hostIP`). `https` or `http`. Default: `https://${NODE_IP}:10250`.
    #[serde(default = "default_kubelet_url")]
    pub kubelet_url: String,
    /// Bearer token sent to the kubelet (re-read on every request); `null` sends none.
    /// Default: `/var/run/secrets/kubernetes.io/serviceaccount/token`.
    #[serde(default = "default_token_file")]
    pub token_file: Option<PathBuf>,
    /// CA bundle (PEM) that signed the kubelet's serving certificate; `null` uses the built-in
    /// web roots. Default: `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`.
    #[serde(default = "default_ca_file")]
    pub ca_file: Option<PathBuf>,
    /// Accept any kubelet certificate (kubelets with self-signed certificates). Default: `false`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Time between two pod lists, in milliseconds. Default: `30000`.
    #[serde(default = "default_refresh_interval_ms")]
    pub refresh_interval_ms: u64,
    /// Scrape the kubelet's `/metrics/cadvisor` (job `kubelet`). Default: `true`.
    #[serde(default = "default_true")]
    pub scrape_cadvisor: bool,
    /// Scrape the kubelet's `/metrics/resource` (job `kubelet`). Default: `true`.
    #[serde(default = "default_true")]
    pub scrape_resource: bool,
    /// Scrape pods annotated `prometheus.io/scrape: "true"` (job `kubernetes-pods`).
    /// Default: `true`.
    #[serde(default = "default_true")]
    pub scrape_annotated_pods: bool,
    /// Scrape Spark driver pods (label `spark-role=driver`) on their UI port (jobs
    /// `spark-driver`, `spark-executors`). Default: `true`.
    #[serde(default = "default_true")]
    pub scrape_spark_drivers: bool,
    /// Port of the Spark driver UI (`spark.ui.port`). Default: `4040`.
    #[serde(default = "default_spark_ui_port")]
    pub spark_ui_port: u16,
}

fn default_kubelet_url() -> String {
    "https://${NODE_IP}:10250".into()
}
fn default_token_file() -> Option<PathBuf> {
    Some(PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token"))
}
fn default_ca_file() -> Option<PathBuf> {
    Some(PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"))
}
fn default_refresh_interval_ms() -> u64 {
    30_000
}
fn default_true() -> bool {
    true
}
fn default_spark_ui_port() -> u16 {
    4040
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            kubelet_url: default_kubelet_url(),
            token_file: default_token_file(),
            ca_file: default_ca_file(),
            insecure_skip_verify: false,
            refresh_interval_ms: default_refresh_interval_ms(),
            scrape_cadvisor: true,
            scrape_resource: true,
            scrape_annotated_pods: true,
            scrape_spark_drivers: true,
            spark_ui_port: default_spark_ui_port(),
        }
    }
}

/// Replaces every `${VAR}` with `lookup(VAR)`; an unknown variable is an error naming it.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unterminated ${{ in {text:?}"))?;
        let name = &after[..end];
        out.push_str(&lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl KubernetesConfig {
    /// The kubelet URL with environment variables expanded.
    pub fn resolved_kubelet_url(&self) -> anyhow::Result<Url> {
        let expanded = expand_env(&self.kubelet_url, |v| std::env::var(v).ok())
            .map_err(|e| anyhow::anyhow!("kubernetes.kubelet_url: {e}"))?;
        parse_kubelet_url(&expanded).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Checks the section (variables not set here are checked with a placeholder value: the
    /// config may be validated away from the node).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| ConfigError { field: format!("kubernetes.{field}"), message };
        let expanded = expand_env(&self.kubelet_url, |v| Some(std::env::var(v).unwrap_or_else(|_| "placeholder".into())))
            .map_err(|e| bad("kubelet_url", e))?;
        parse_kubelet_url(&expanded)?;
        if self.refresh_interval_ms == 0 {
            return Err(bad("refresh_interval_ms", "must be greater than 0".into()));
        }
        if self.spark_ui_port == 0 {
            return Err(bad("spark_ui_port", "must be greater than 0".into()));
        }
        Ok(())
    }
}

fn parse_kubelet_url(url: &str) -> Result<Url, ConfigError> {
    let bad = |message: String| ConfigError { field: "kubernetes.kubelet_url".into(), message };
    let parsed = Url::parse(url).map_err(|e| bad(format!("{e} in {url:?}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(format!("unsupported scheme {:?} (http or https)", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!("no host in {url:?}")));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        let env = |v: &str| (v == "NODE_IP").then(|| "10.1.2.3".to_string());
        assert_eq!(expand_env("https://${NODE_IP}:10250", env).unwrap(), "https://10.1.2.3:10250");
        assert_eq!(expand_env("http://x", env).unwrap(), "http://x");
        assert_eq!(expand_env("${NOPE}", env).unwrap_err(), "environment variable NOPE is not set");
        assert!(expand_env("${NODE_IP", env).is_err());
    }

    #[test]
    fn defaults_and_validation() {
        let c: KubernetesConfig = serde_yaml::from_str("scrape_cadvisor: false\n").unwrap();
        assert_eq!(c.refresh_interval_ms, 30_000);
        assert!(!c.scrape_cadvisor && c.scrape_resource);
        assert_eq!(c.spark_ui_port, 4040);
        c.validate().unwrap();
        let bad = KubernetesConfig { kubelet_url: "ftp://x".into(), ..KubernetesConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().starts_with("kubernetes.kubelet_url: unsupported scheme"));
        assert!(serde_yaml::from_str::<KubernetesConfig>("kubelet: x\n").is_err());
    }
}
