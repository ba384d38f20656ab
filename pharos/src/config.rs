//! `pharos.yaml`: the control-plane configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use pharos_collector::{CollectorConfig, KafkaConsumerConfig};
use serde::Deserialize;

/// The whole control-plane configuration. Every field has a default, so an empty file (or no
/// file) is a valid configuration: HTTP ingest only, data under `./data`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PharosConfig {
    /// Address of the HTTP listener (ingest, query API, `/metrics`). Default: `127.0.0.1:9494`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where Parquet files, log splits, the WAL and the manifest live. Default: `./data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Ingest and flushing (see `CollectorConfig`).
    #[serde(default)]
    pub collector: CollectorConfig,
}

impl Default for PharosConfig {
    fn default() -> Self {
        PharosConfig { listen: default_listen(), data_dir: default_data_dir(), collector: CollectorConfig::default() }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9494))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

/// Command-line overrides applied on top of the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// Configuration file (YAML). Without it, embedded defaults are used.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:9494 (overrides `listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers HOST:PORT[,…]; enables consuming (overrides `collector.kafka.brokers`).
    #[arg(long)]
    pub kafka_brokers: Option<String>,
}

impl PharosConfig {
    /// Loads a YAML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let text = pharos_model::env::expand(&text)
            .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        let cfg: PharosConfig = if text.trim().is_empty() {
            PharosConfig::default()
        } else {
            serde_yaml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?
        };
        cfg.validate().with_context(|| format!("invalid config {}", path.display()))?;
        Ok(cfg)
    }

    /// The file (if any) with command-line overrides applied, validated.
    pub fn resolve(o: &Overrides) -> anyhow::Result<Self> {
        let mut cfg = match &o.config {
            Some(p) => Self::load(p)?,
            None => PharosConfig::default(),
        };
        if let Some(l) = o.listen {
            cfg.listen = l;
        }
        if let Some(d) = &o.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(b) = &o.kafka_brokers {
            match &mut cfg.collector.kafka {
                Some(k) => k.brokers = b.clone(),
                None => cfg.collector.kafka = Some(KafkaConsumerConfig::with_brokers(b)),
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.collector.flush_interval_ms == 0 {
            bail!("collector.flush_interval_ms must be greater than 0");
        }
        if let Some(k) = &self.collector.kafka {
            if k.brokers.trim().is_empty() {
                bail!("collector.kafka.brokers must not be empty");
            }
            if k.metrics_topic.is_empty() || k.logs_topic.is_empty() {
                bail!("collector.kafka topics must not be empty");
            }
            if k.metrics_topic == k.logs_topic {
                bail!("collector.kafka.metrics_topic and logs_topic must differ (both are {:?})", k.metrics_topic);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_bad_values_are_rejected_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pharos.yaml");
        std::fs::write(&p, "listen: 127.0.0.1:1\ncolector: {}\n").unwrap();
        let e = format!("{:#}", PharosConfig::load(&p).unwrap_err());
        assert!(e.contains("pharos.yaml") && e.contains("colector"), "{e}");
        std::fs::write(&p, "collector:\n  kafka:\n    brokers: b:1\n    metrics_topic: x\n    logs_topic: x\n").unwrap();
        let e = format!("{:#}", PharosConfig::load(&p).unwrap_err());
        assert!(e.contains("must differ"), "{e}");
        std::fs::write(&p, "").unwrap();
        assert_eq!(PharosConfig::load(&p).unwrap().listen, default_listen());
    }

    #[test]
    fn overrides_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pharos.yaml");
        std::fs::write(&p, "listen: 127.0.0.1:1\ndata_dir: /x\n").unwrap();
        let o = Overrides {
            config: Some(p),
            listen: Some("127.0.0.1:2".parse().unwrap()),
            data_dir: None,
            kafka_brokers: Some("k:9092".into()),
        };
        let c = PharosConfig::resolve(&o).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.collector.kafka.unwrap().metrics_topic, "pharos.metrics");
    }
}
